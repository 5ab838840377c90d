"""Email (placeholder)."""


class EmailError(RuntimeError):
    """The report could not be emailed."""


def send_run_report(cfg, run_id):
    raise EmailError("email is not built yet")
