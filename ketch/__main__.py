"""`python -m ketch` is the `ketch` command."""

from ketch.cli.main import main

if __name__ == "__main__":
    main()
