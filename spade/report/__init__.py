"""Speed/quality reports from a run directory (see :mod:`spade.report.results` for its
format): ``results.csv``, a Markdown summary, matplotlib figures and one HTML page.

Rendering (:func:`spade.report.render.write_report`, which loads pandas, matplotlib and
Jinja) reads results files only; :func:`spade.report.collect.collect_run` builds a run
directory from model files (import it from there: it runs models). The package itself
loads neither, so that commands which only add to a run folder stay light."""
from .results import (append_record, conditions_from_profile, latency_from_profile, load_sample, read_records,
                      read_run_info, save_sample, write_run_info)

__all__ = ["append_record", "conditions_from_profile", "latency_from_profile", "load_sample", "read_records",
           "read_run_info", "save_sample", "write_run_info"]
