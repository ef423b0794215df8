#!/usr/bin/env bash
# A deploy with an ecosystem file, as PM2's documentation writes it (JSON as PM2 reads
# it: a JavaScript object literal), `pm2` replaced by `corral`.
set -euo pipefail

cat > ecosystem.json <<'JSON'
{
  apps: [
    {
      name: "web",
      script: "app.js",
      instances: 2,
      exec_mode: "fork",
      args: "--port 3000",
      env: { NODE_ENV: "development" },
      env_production: { NODE_ENV: "production" },
    },
    { name: "worker", script: "worker.js", max_memory_restart: "200M" },
  ],
}
JSON

corral startOrReload ecosystem.json --env production
corral start ecosystem.json --env production --update-env
corral reload all --update-env
corral restart web --max-memory-restart 300M --time
corral scale web 3
corral list --sort name
corral describe web > /dev/null
corral logs web --lines 5 --nostream > /dev/null
corral save --force
corral stop ecosystem.json
corral delete ecosystem.json
test "$(corral jlist)" = "[]"
corral cleardump
