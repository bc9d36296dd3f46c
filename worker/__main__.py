"""Worker entry point: `python -m worker`."""

import logging
import signal

from common.amqp import Consumer, Publisher
from common.jobs import JobStore
from common.logs import configure_logging
from common.settings import settings
from common.storage import ObjectStore
from common.topology import JOB_QUEUES
from worker.handler import JobHandler
from worker.isolation import PipelineProcess
from worker.stats import WorkerStats

logger = logging.getLogger("worker")


def main() -> None:
    configure_logging(settings, "worker")
    name = settings.instance_name
    store = ObjectStore(settings)
    publisher = Publisher(settings, f"worker {name} publisher")
    stats = WorkerStats(name, store, settings.stats_interval_s)
    pipeline = PipelineProcess(settings.worker_memory_limit_mb)
    handler = JobHandler(settings, store, JobStore(store), publisher, name, stats, pipeline)
    consumer = Consumer(
        settings, JOB_QUEUES, stats.track(handler), f"worker {name}",
        prefetch=settings.prefetch_count, grace_s=settings.shutdown_grace_s,
    )

    def stop(signum: int, _frame: object) -> None:
        logger.info("worker %s: %s received; finishing the current job", name, signal.Signals(signum).name)
        consumer.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    stats.start()
    handler.start()
    try:
        consumer.run()
    finally:
        handler.close()
        stats.close()
        publisher.close()


if __name__ == "__main__":
    main()
