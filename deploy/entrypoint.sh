#!/bin/sh
# Container entrypoint for cgt-gateway (docs/deploy.md; run by tests/e2e/test_deploy_docs.py).
#
#   entrypoint.sh                         cgt-gateway migrate, then cgt-gateway serve
#   entrypoint.sh serve --processes 2     cgt-gateway migrate, then cgt-gateway serve --processes 2
#   entrypoint.sh worker | audit verify   that command alone (no migration)
#
# `exec` replaces this shell with the gateway, so the gateway is the container's main process and
# gets the SIGTERM of `docker stop` or Kubernetes itself: it stops accepting, finishes the requests
# in flight and exits (0 from `serve --processes N` and `worker`; a single `serve` process ends by the
# SIGTERM uvicorn re-raises after shutting down, 143).  Configuration comes from the environment
# (CGT_GATEWAY_DATABASE_URL, ...).
set -eu
if [ "$#" -eq 0 ]; then
    set -- serve
fi
if [ "$1" = serve ]; then
    cgt-gateway migrate
fi
exec cgt-gateway "$@"
