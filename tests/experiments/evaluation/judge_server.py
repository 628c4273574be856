"""A fake OpenAI-compatible judge on 127.0.0.1 (never the internet), started by the tests in a
thread: it answers each chat completion deterministically from the judged question, and can
be told to fail (HTTP 503 after some requests), to answer something that is not JSON, or to
answer a completion whose text holds no verdict."""
from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def question_of(prompt: str) -> str:
    """The judged question inside a judge prompt (pack prompts and the built-in one tag it)."""
    found = re.search(r"<question>(.*?)</question>", prompt, re.DOTALL)
    return found.group(1).strip() if found else ""


def verdict_key(prompt: str) -> str:
    """The JSON field the prompt asks the verdict in (the last one it names of answer/verdict)."""
    return max(("answer", "verdict"), key=lambda k: prompt.rfind(f'"{k}"'))


class JudgeServer:
    """``with JudgeServer(rule) as url:`` serves ``{url}/chat/completions``; ``rule(question)``
    gives the label. ``fail_after`` (HTTP 503 from that many requests on), ``mode`` ("ok",
    "not_json", "no_verdict"), ``requests`` (every request body) and ``failed`` (how many were refused) are set or
    read between calls."""

    def __init__(self, rule=lambda question: "neutral"):
        self.rule, self.requests, self.fail_after, self.mode, self.failed = rule, [], None, "ok", 0
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    server.requests.append({"path": self.path, "auth": self.headers.get("Authorization"),
                                            "body": body})
                    failing = server.fail_after is not None and len(server.requests) > server.fail_after
                    server.failed += failing
                prompt = body["messages"][-1]["content"]
                if failing:
                    return self.reply(503, b'{"error": "overloaded"}')
                if server.mode == "not_json":
                    return self.reply(200, b"<html>gateway says hello</html>")
                content = ("I would rather not say." if server.mode == "no_verdict" else
                           json.dumps({"reason": "test", verdict_key(prompt): server.rule(question_of(prompt))}))
                return self.reply(200, json.dumps({"choices": [{"message": {"role": "assistant",
                                                                             "content": content}}]}).encode())

            def reply(self, status: int, data: bytes):
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self) -> "JudgeServer":
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
