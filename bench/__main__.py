"""``python -m bench``: generate the data set and measure C1-C8."""

from bench.run import main

raise SystemExit(main())
