"""The one base class of input errors, and the wrapper that turns them into a one-line message at every entry point."""

import functools
import sys

EXIT_INPUT_ERROR = 2


class VilampError(Exception):
    """A problem with the user's input: checkpoint, video, dataset, training-data registry or arguments.

    Every such error derives from this class and its message names the file or option at fault; every command-line
    entry point (`command`) prints that one line and exits with status 2.
    """


def command(main):
    """Decorate an entry point's `main`: a VilampError prints `error: <message>` on stderr and exits with status 2."""

    @functools.wraps(main)
    def run(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except VilampError as error:
            print(f"error: {error}", file=sys.stderr)
            sys.exit(EXIT_INPUT_ERROR)

    return run
