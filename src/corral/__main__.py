"""`python -m corral` is the `corral` command."""

from corral.client.cli import main

raise SystemExit(main())
