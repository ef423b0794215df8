#!/usr/bin/env bash
# The everyday commands of a PM2 user's scripts, `pm2` replaced by `corral`.
set -euo pipefail

corral ping
corral start job.py --name job --max-memory-restart 200M --merge-logs \
  --log-date-format "YYYY-MM-DD HH:mm Z" --no-vizion --no-pmx --no-automation
# grep without -q: under pipefail, -q may close the pipe before corral has written all
# (corral then ends by SIGPIPE, exit 141, as coreutils do)
corral jlist | grep '"name":"job"' > /dev/null
corral prettylist | grep "name: 'job'" > /dev/null
corral env 0 | grep '^name: job$' > /dev/null
corral pid job > /dev/null
test "$(corral id job)" = "[ 0 ]"
corral sendSignal SIGWINCH job
corral restart job
corral reset job
corral ls -m | grep '^+--- job$' > /dev/null
corral logs job --lines 1 --nostream --raw > /dev/null
corral flush
corral reloadLogs
corral stop all
if corral sendSignal SIGWINCH job 2> /dev/null; then exit 1; fi   # stopped: exit code 1
corral start job                                                    # smart start
echo '{"apps": [{"name": "piped", "script": "job.py"}]}' | corral start -
corral stop /^pi/
echo '{"apps": [{"name": "piped", "script": "job.py"}]}' | corral delete -
corral delete all
if corral stop all 2> /dev/null; then exit 1; fi                    # nothing: exit code 1
corral updatePM2 > /dev/null
corral kill
