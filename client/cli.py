"""The command-line client of the API.

    imgpipe upload photo.jpg more/*.png --ops "resize(width=800),watermark" --wait --out results/
    imgpipe upload photo.jpg --preset avatar --wait --out results/     # results/photo/<variant>.<ext>
    imgpipe upload photo.jpg --variants '{"thumb": {"operations": "resize(width=200)"}}'
    imgpipe status JOB_ID [--wait 30]
    imgpipe watch                      # every job's changes as they happen (an operator's key)
    imgpipe dlq stats
    imgpipe dlq replay [--job JOB_ID | --reason REASON]

The API's address and key come from --url / --key or IMGPIPE_URL / IMGPIPE_API_KEY. `--wait`
follows each job's event stream (GET /jobs/{id}/events), not by polling. Exit status: 0 when
every job completed (or, without --wait, was accepted), 1 when any failed or was refused, 2 for a
usage error or an API that cannot be reached or refuses the request.
"""

import argparse
import json
import os
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from httpx_sse import connect_sse

DEFAULT_URL = "http://localhost:8000"
FINAL = ("completed", "failed", "cancelled")
OK, FAILED, UNUSABLE = 0, 1, 2
STREAM_RECONNECTS = 20


class Unusable(Exception):
    """The API cannot be reached, or refused the request itself (not a job's outcome)."""


def _problem(response: httpx.Response) -> str:
    try:
        return str(response.json().get("detail") or response.text)
    except ValueError:
        return response.text[:200]


class Api:
    def __init__(self, url: str, key: str | None, timeout: float = 30) -> None:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._http = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=httpx.Timeout(timeout, read=None))
        self.url = url

    def request(self, method: str, path: str, **options: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **options)
        except httpx.HTTPError as exc:
            raise Unusable(f"cannot reach the API at {self.url}: {exc}") from exc
        if response.status_code >= 400:
            raise Unusable(f"{method} {path}: {response.status_code} {_problem(response)}")
        return response

    def follow(self, job_id: str, on_event: Callable[[str, dict], None]) -> dict:
        """The job's events until its final one, reconnecting (with Last-Event-ID) if a stream ends early."""
        last_id = ""
        for _ in range(STREAM_RECONNECTS):
            headers = {"Last-Event-ID": last_id} if last_id else {}
            try:
                with connect_sse(self._http, "GET", f"/jobs/{job_id}/events", headers=headers) as source:
                    if source.response.status_code >= 400:
                        source.response.read()
                        raise Unusable(f"events of {job_id}: {source.response.status_code} {_problem(source.response)}")
                    for event in source.iter_sse():
                        data = event.json()
                        if event.event in FINAL or event.event in ("queued", "processing", "retrying"):
                            last_id = event.id or last_id
                        on_event(event.event, data)
                        if event.event in FINAL:
                            return data
            except httpx.HTTPError:
                pass  # the stream broke: reconnect and resume
        raise Unusable(f"the event stream of {job_id} kept ending before the job did")

    def close(self) -> None:
        self._http.close()


class Printer:
    """One line per change, from several threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def __call__(self, text: str, error: bool = False) -> None:
        with self._lock:
            print(text, file=sys.stderr if error else sys.stdout, flush=True)


def _describe(data: dict) -> str:
    status = data.get("status", "?")
    results = data.get("results") or []
    if status == "completed" and len(results) > 1:
        return "completed " + "; ".join(
            f"{r['name']} {r['width']}x{r['height']} {r['format']}, {r['bytes']} bytes" for r in results
        )
    if status == "completed" and data.get("result"):
        result = data["result"]
        return f"completed {result['width']}x{result['height']} {result['format']}, {result['bytes']} bytes"
    if status == "failed":
        return f"failed: {data.get('error_reason')}: {data.get('error')}"
    if status == "processing":
        return f"processing on {data.get('worker')} (attempt {data.get('attempts')})"
    return status


def upload(api: Api, args: argparse.Namespace, say: Printer) -> int:
    files = [Path(name) for name in args.files]
    missing = [str(path) for path in files if not path.is_file()]
    if missing:
        say(f"not a file: {', '.join(missing)}", error=True)
        return UNUSABLE
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)

    def one(path: Path) -> int:
        fields = (
            ("operations", args.ops), ("output_format", args.format), ("quality", args.quality),
            ("variants", args.variants), ("preset", args.preset),
        )
        form = {name: value for name, value in fields if value}
        try:
            with open(path, "rb") as handle:
                accepted = api.request("POST", "/upload", files={"file": (path.name, handle)}, data=form).json()
        except Unusable as exc:
            say(f"{path.name}: refused: {exc}", error=True)
            return FAILED
        job_id = accepted["job_id"]
        say(f"{path.name}: {job_id} queued")
        if not args.wait:
            return OK
        def show(event: str, data: dict[str, Any]) -> None:
            if event in (*FINAL, "processing", "retrying"):
                say(f"{path.name}: {_describe(data)}")

        final = api.follow(job_id, show)
        if final.get("status") != "completed":
            return FAILED
        if args.out and (args.variants or args.preset):
            # One folder per file, one file per variant: out/<file>/<variant>.<ext>.
            folder = args.out / path.stem
            folder.mkdir(exist_ok=True)
            for result in final.get("results") or []:
                target = folder / f"{result['name']}.{_extension(result['format'])}"
                target.write_bytes(api.request("GET", f"/result/{job_id}/{result['name']}").content)
                say(f"{path.name}: {result['name']} written to {target}")
        elif args.out:
            target = args.out / f"{path.stem}.{_extension(final['result']['format'])}"
            target.write_bytes(api.request("GET", f"/result/{job_id}").content)
            say(f"{path.name}: written to {target}")
        return OK

    with ThreadPoolExecutor(max(1, min(args.parallel, len(files)))) as pool:
        outcomes = list(pool.map(one, files))
    return max(outcomes, default=OK)


def _extension(format_: str) -> str:
    return {"jpeg": "jpg"}.get(format_, format_)


def status(api: Api, args: argparse.Namespace, say: Printer) -> int:
    params = {"wait": args.wait} if args.wait else {}
    record = api.request("GET", f"/status/{args.job_id}", params=params).json()
    say(json.dumps(record, indent=2))
    return FAILED if record["status"] == "failed" else OK


def watch(api: Api, args: argparse.Namespace, say: Printer) -> int:
    try:
        with connect_sse(api._http, "GET", "/events") as source:
            if source.response.status_code >= 400:
                source.response.read()
                raise Unusable(f"GET /events: {source.response.status_code} {_problem(source.response)}")
            say(f"following every job's changes at {api.url} (Ctrl-C to stop)")
            for event in source.iter_sse():
                data = event.json()
                if "job_id" in data:
                    say(f"{data['occurred_at'][11:23]}  {data['job_id']}  {_describe(data)}")
                else:
                    say(f"{event.event}: {data.get('broker') or data.get('detail')}")
    except KeyboardInterrupt:
        return OK
    except httpx.HTTPError as exc:
        raise Unusable(f"the event stream ended: {exc}") from exc
    return OK


def dlq(api: Api, args: argparse.Namespace, say: Printer) -> int:
    if args.action == "stats":
        say(json.dumps(api.request("GET", "/dlq/stats").json(), indent=2))
        return OK
    body = {k: v for k, v in (("job_id", args.job), ("reason", args.reason)) if v}
    result = api.request("POST", "/dlq/replay", json=body).json()
    say(json.dumps(result, indent=2))
    return FAILED if result["skipped"] else OK


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="imgpipe", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    root.add_argument("--url", default=os.environ.get("IMGPIPE_URL", DEFAULT_URL), help="the API (IMGPIPE_URL)")
    root.add_argument("--key", default=os.environ.get("IMGPIPE_API_KEY"), help="an API key (IMGPIPE_API_KEY)")
    commands = root.add_subparsers(dest="command", required=True)

    up = commands.add_parser("upload", help="upload images; with --wait follow them to the end")
    up.add_argument("files", nargs="+")
    up.add_argument("--ops", help='operations, e.g. "resize(width=800),watermark"; default: the API\'s')
    up.add_argument("--format", choices=("jpeg", "png", "webp"), help="output format; default: the input's")
    up.add_argument("--quality", type=int, help="1-100")
    named = up.add_mutually_exclusive_group()
    named.add_argument(
        "--variants", metavar="JSON",
        help='named outputs from one decode, e.g. \'{"thumb": {"operations": "resize(width=200)"}}\'',
    )
    named.add_argument("--preset", metavar="NAME", help="an operator's preset (GET /presets): its variants")
    up.add_argument("--wait", action="store_true", help="follow each job's events until it ends")
    up.add_argument(
        "--out", type=Path,
        help="with --wait: write each result into this folder (variants: <folder>/<file>/<variant>.<ext>)",
    )
    up.add_argument("--parallel", type=int, default=4, help="uploads in flight at once (default 4)")
    up.set_defaults(run=upload)

    st = commands.add_parser("status", help="a job's record as JSON")
    st.add_argument("job_id")
    st.add_argument("--wait", type=float, help="wait up to S seconds for the status to change")
    st.set_defaults(run=status)

    commands.add_parser("watch", help="every job's changes as they happen (an operator's key)").set_defaults(run=watch)

    dl = commands.add_parser("dlq", help="the dead-letter queue (an operator's key)")
    dl.add_argument("action", choices=("stats", "replay"))
    dl.add_argument("--job", help="replay: only this job")
    dl.add_argument("--reason", help="replay: only letters with this reason")
    dl.set_defaults(run=dlq)
    return root


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)  # a usage error exits with 2
    say = Printer()
    if getattr(args, "out", None) and not args.wait:
        say("--out needs --wait: results exist once the jobs have completed", error=True)
        return UNUSABLE
    api = Api(args.url, args.key)
    try:
        return int(args.run(api, args, say))
    except Unusable as exc:
        say(f"imgpipe: {exc}", error=True)
        return UNUSABLE
    finally:
        api.close()
