"""A small Hugging Face hub on loopback: one model repository, for the real download code.

huggingface_hub sends every request to `HF_ENDPOINT`, so with this server's address there,
fastembed downloads a model by name exactly as from huggingface.co: the repository's info, its
file tree, then each file's metadata (HEAD) and content (GET) under `/<repo>/resolve/<commit>/`.
"""

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from book_pipeline_tests.support.loopback_http import JsonHandler, serve_on_loopback

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@dataclass
class ModelHub:
    url: str
    repository: str
    files: dict[str, bytes]
    requests: list[str] = field(default_factory=list)


def _git_blob_id(content: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


@contextmanager
def model_hub_server(repository: str, files: dict[str, bytes]) -> Iterator[ModelHub]:
    """Serve `files` (path in the repository -> content) as the repository's only commit."""
    hub = ModelHub("", repository, files)
    info_paths = {f"/api/models/{repository}", f"/api/models/{repository}/revision/main"}
    tree_path = f"/api/models/{repository}/tree/{COMMIT}"
    resolve_prefixes = (f"/{repository}/resolve/{COMMIT}/", f"/{repository}/resolve/main/")

    class HubHandler(JsonHandler):
        def do_HEAD(self) -> None:
            self._file(with_body=False)

        def do_GET(self) -> None:
            path = self.path.split("?")[0]
            hub.requests.append(f"GET {path}")
            if path in info_paths:
                self.reply_json(200, self._info())
            elif path == tree_path:
                self.reply_json(200, self._tree())
            else:
                self._file(with_body=True)

        def _info(self) -> dict:
            siblings = [{"rfilename": name} for name in hub.files]
            return {"id": repository, "modelId": repository, "sha": COMMIT, "siblings": siblings}

        def _tree(self) -> list[dict]:
            return [
                {"type": "file", "path": name, "size": len(content), "oid": _git_blob_id(content)}
                for name, content in hub.files.items()
            ]

        def _file(self, with_body: bool) -> None:
            path = self.path.split("?")[0]
            if not with_body:
                hub.requests.append(f"HEAD {path}")
            name = next((path[len(p) :] for p in resolve_prefixes if path.startswith(p)), None)
            if name not in hub.files:
                self.send_response(404)
                self.send_header("X-Error-Code", "EntryNotFound")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            content = hub.files[name]
            self.send_response(200)
            self.send_header("Content-Length", str(len(content)))
            self.send_header("ETag", f'"{_git_blob_id(content)}"')
            self.send_header("X-Repo-Commit", COMMIT)
            self.end_headers()
            if with_body:
                self.wfile.write(content)

    with serve_on_loopback(HubHandler) as url:
        hub.url = url
        yield hub
