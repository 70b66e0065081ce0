from automationd.cli import main

raise SystemExit(main())
