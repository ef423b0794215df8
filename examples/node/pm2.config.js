// The lesson's PM2 file, unchanged: `corral start pm2.config.js --env production`
module.exports = {
  apps : [{
    name: "nodejs-column",
    script: "./app.js",
    instances: 2,
    exec_mode: 'cluster',
    env_development: {
      NODE_ENV: "development",
      watch: true,
    },
    env_testing: {
      NODE_ENV: "testing",
      watch: false,
    },
    env_production: {
      NODE_ENV: "production",
      watch: false,
    },
    log_date_format: 'YYYY-MM-DD HH:mm Z',
    error_file: '~/data/err.log',
    out_file: '~/data/info.log',
    max_restarts: 10,
  }]
}
