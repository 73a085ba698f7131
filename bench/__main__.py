"""``python -m bench``: generate the data set and measure P1-P7."""

from bench.run import main

raise SystemExit(main())
