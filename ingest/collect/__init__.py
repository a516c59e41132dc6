"""Live collection from Bilibili's public web API (issue #4, docs/collectors.md).

`client` talks HTTP (cookies, signing, rate limit, retries, raw archive), `parse` turns payloads into
events, `state` remembers what is tracked and when it is due, `collectors` runs the jobs.
"""
