from edgecascade.cli import main

raise SystemExit(main())
