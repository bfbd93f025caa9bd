"""Drives a sollol gateway with the official ollama Python client.

Usage: python3 client_check.py GATEWAY_URL
Exits non-zero with a message on the first behaviour that differs from a single Ollama
server. Run by tests/python_client.rs against simulated nodes.
"""

import sys

import ollama


def check(condition, message):
    if not condition:
        print(f"FAILED: {message}", file=sys.stderr)
        sys.exit(1)


def main(url):
    client = ollama.Client(host=url)

    listed = client.list()
    names = sorted(m.model for m in listed.models)
    check(names == ["llama3.2:latest", "nomic-embed-text:latest"], f"list: {names}")

    running = client.ps()
    check([m.name for m in running.models] == ["llama3.2:latest"], f"ps: {running}")

    shown = client.show("llama3.2")
    check(shown.modelinfo is not None, "show: model_info present")

    reply = client.chat(model="llama3.2", messages=[{"role": "user", "content": "hello"}])
    check(reply.done and reply.message.role == "assistant" and reply.message.content, f"chat: {reply}")

    parts = list(client.chat(model="llama3.2", messages=[{"role": "user", "content": "hello"}], stream=True))
    check(len(parts) > 2 and parts[-1].done, f"streamed chat: {len(parts)} parts")
    streamed_text = "".join(p.message.content for p in parts)
    check(streamed_text == reply.message.content, "streamed and whole chat give the same text")
    check(parts[-1].eval_count is not None, "final chunk carries the metrics")

    generated = client.generate(model="llama3.2", prompt="why is the sky blue?")
    check(generated.done and generated.response, f"generate: {generated}")
    chunks = list(client.generate(model="llama3.2", prompt="why is the sky blue?", stream=True))
    check("".join(c.response for c in chunks) == generated.response, "streamed generate")

    embedded = client.embed(model="nomic-embed-text", input=["one", "two"])
    check(len(embedded.embeddings) == 2, f"embed: {len(embedded.embeddings)} vectors")
    norm = sum(x * x for x in embedded.embeddings[0]) ** 0.5
    check(abs(norm - 1.0) < 1e-3, f"embed vectors are normalised: {norm}")

    try:
        client.chat(model="no-such-model", messages=[{"role": "user", "content": "hi"}])
        check(False, "unknown model must raise")
    except ollama.ResponseError as err:
        check(err.status_code == 404, f"unknown model status {err.status_code}")
        check("not found" in err.error, f"unknown model message {err.error!r}")

    try:
        list(client.chat(model="no-such-model", messages=[{"role": "user", "content": "hi"}], stream=True))
        check(False, "unknown model must raise when streaming too")
    except ollama.ResponseError as err:
        check(err.status_code == 404, f"streamed unknown model status {err.status_code}")

    print("ok: list, ps, show, chat, streamed chat, generate, embed and 404 behave as against ollama")


if __name__ == "__main__":
    main(sys.argv[1])
