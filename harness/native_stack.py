"""The native stack exactly as `make run` starts it (tools/stack.sh: supervisord, SeaweedFS, the API,
the notifier and the workers), isolated for a test: its own run directory, ports, vhost and bucket."""

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from harness.broker import BrokerVhost
from harness.objectstore import free_s3_port
from harness.processes import PROJECT_DIR, free_port
from harness.system import system_env

STACK = PROJECT_DIR / "tools" / "stack.sh"


@dataclass
class NativeStack:
    vhost: BrokerVhost
    env: dict[str, str]

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.env['API_PORT']}"

    @property
    def run_dir(self) -> Path:
        return Path(self.env["RUN_DIR"])

    def stack(self, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
        """tools/stack.sh with this stack's environment; raises with its output when it fails."""
        result = subprocess.run(
            ["bash", str(STACK), *args], cwd=PROJECT_DIR, env=self.env, capture_output=True, text=True, check=False,
            timeout=timeout,
        )
        if result.returncode != 0:
            raise RuntimeError(f"stack.sh {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}\n{self.logs()}")
        return result

    def logs(self) -> str:
        return "\n".join(
            f"--- {path.name}\n{path.read_text(errors='replace')[-3000:]}"
            for path in sorted((self.run_dir / "logs").glob("*.log"))
        )

    def stop(self) -> None:
        self.stack("stop", timeout=120)


def start_native_stack(vhost: BrokerVhost, run_dir: Path, workers: int = 1, **settings: str) -> NativeStack:
    """`make run WORKERS=workers` on free ports; returns once the API is ready."""
    s3_port = free_s3_port()
    api_port = free_port()
    env = {
        **system_env(vhost, f"127.0.0.1:{s3_port}"),
        "RUN_DIR": str(run_dir),
        "VENV": str(Path(sys.executable).parent.parent),
        "API_HOST": "127.0.0.1",
        "API_PORT": str(api_port),
        "API_PUBLIC_URL": f"http://127.0.0.1:{api_port}",
        "S3_PORT": str(s3_port),
        "MAX_WORKERS": "4",
        **settings,
    }
    stack = NativeStack(vhost, env)
    try:
        stack.stack("run", str(workers))
    except BaseException:
        subprocess.run(
            ["bash", str(STACK), "stop"], cwd=PROJECT_DIR, env=env, capture_output=True, timeout=120, check=False
        )
        raise
    return stack
