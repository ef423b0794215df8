"""`python -m corral.daemon --ready-fd N`: how the client starts the daemon."""

from corral.daemon.server import main

raise SystemExit(main())
