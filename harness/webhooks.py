"""A webhook receiver on 127.0.0.1 for tests: remembers every call, answers as told."""

import base64
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TEST_WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"imgpipe test webhook secret 0123").decode()


@dataclass
class Call:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float = field(default_factory=time.monotonic)

    @property
    def payload(self) -> dict:
        return json.loads(self.body)

    @property
    def job_id(self) -> str:
        return self.payload["data"]["job_id"]


class WebhookReceiver:
    """`status_code` is the answer; `drip_s` > 0 sends the answer one byte every `drip_s` seconds
    (an endpoint that never quite times out)."""

    def __init__(self, status_code: int = 204, drip_s: float = 0.0) -> None:
        self.status_code = status_code
        self.drip_s = drip_s
        self.calls: list[Call] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.calls.append(Call(self.path, dict(self.headers), body))
                if receiver.drip_s:
                    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"x" * 1000
                    try:
                        for byte in answer:
                            self.wfile.write(bytes([byte]))
                            self.wfile.flush()
                            time.sleep(receiver.drip_s)
                    except OSError:
                        pass
                    return
                self.send_response(receiver.status_code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_port
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def url(self, path: str = "/hook", host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def calls_for(self, job_id: str) -> list[Call]:
        return [call for call in self.calls if call.job_id == job_id]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
