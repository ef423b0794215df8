#!/usr/bin/env bash
# The issue's example: a script written for PM2, with `pm2` replaced by `corral` and
# nothing else. Run by tests/test_pm2_parity.py in a folder holding app.js.
set -euo pipefail

corral start app.js -x --name api -- --port 3001 && corral restart api --update-env && corral stop /^api/ && corral delete all

test "$(corral jlist)" = "[]"
