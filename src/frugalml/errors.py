"""User-facing errors: the CLI prints their message as one line and exits non-zero."""


class FrugalError(Exception):
    """An error the user can fix (bad input, missing file, wrong argument)."""


class DataError(FrugalError):
    """The data file is missing, malformed or unsuitable for the task."""


class BundleError(FrugalError):
    """A bundle is missing, incomplete, tampered with or of an unknown format."""


def first_line(exc: BaseException) -> str:
    """The first non-blank line of an exception's message (libraries often write several)."""
    return next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)


def check_ranges(kind: str, settings: object, checks: dict[str, tuple[bool, str]]) -> None:
    """One error naming every setting whose check failed, with the rules they must meet.
    `checks`: setting name -> (whether it passes, the rule as the user reads it)."""
    wrong = [name for name, (ok, _) in checks.items() if not ok]
    if wrong:
        shown = ", ".join(f"{name}={getattr(settings, name)!r}" for name in wrong)
        rules = ", ".join(rule for _, rule in checks.values())
        raise FrugalError(f"{kind} settings out of range: {shown} ({rules})")
