"""imgpipe's command-line client: `python -m client` (or `./imgpipe`) — see client/cli.py."""
