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
    configure_logging(settings.logging, "worker")
    name, worker = settings.instance_name, settings.worker
    store = ObjectStore(settings.storage)
    publisher = Publisher(settings.broker, f"worker {name} publisher")
    stats = WorkerStats(name, store, worker.stats_interval_s)
    pipeline = PipelineProcess(worker.memory_limit_mb)
    handler = JobHandler(worker, store, JobStore(store), publisher, name, stats, pipeline)
    consumer = Consumer(
        settings.broker, JOB_QUEUES, stats.track(handler), f"worker {name}",
        prefetch=worker.prefetch, grace_s=worker.grace_s,
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
