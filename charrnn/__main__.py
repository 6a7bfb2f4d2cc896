"""``python -m charrnn`` and the ``charrnn`` script: the command line.

Importing the commands takes a second or more (NumPy, scikit-learn); a Ctrl-C meanwhile would
end in a traceback from deep inside an import, so it is reported in one line instead.
"""

import sys


def main() -> None:
    """Import the commands and run them; a Ctrl-C during the import exits quietly (130)."""
    try:
        from charrnn.cli import cli
    except KeyboardInterrupt:
        sys.stderr.write("\nInterrupted while starting; nothing was done.\n")
        sys.exit(130)
    cli(prog_name="charrnn")


if __name__ == "__main__":
    main()
