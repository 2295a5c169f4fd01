"""``python -m irdeploy``: the same command line as the ``irdeploy`` script."""

from irdeploy.runtime.cli import main

raise SystemExit(main())
