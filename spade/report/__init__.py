"""Speed/quality reports from a run directory (see :mod:`spade.report.results` for its
format): ``results.csv``, a Markdown summary, matplotlib figures and one HTML page.

Rendering reads results files only; :func:`spade.report.collect.collect_run` builds a run
directory from model files (import it from there: it runs models)."""
from .render import write_report
from .results import (append_record, conditions_from_profile, latency_from_profile, load_sample, read_records,
                      read_run_info, save_sample, write_run_info)

__all__ = ["write_report", "append_record", "conditions_from_profile", "latency_from_profile", "load_sample",
           "read_records", "read_run_info", "save_sample", "write_run_info"]
