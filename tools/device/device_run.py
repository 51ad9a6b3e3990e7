"""What the prepared device runs share (``speed.py``, ``dense.py``; ``science.py`` its files,
limit and command line; ``launch.sh`` starts them).

A run is a preflight, then rows in priority order, each measured and written to ``--out``
as soon as it finishes, none started after a deadline nor when its guessed end lies past
the hard limit the shell kills the run at. The files (at most 8 come back from the device):

- ``preflight.json``: what the script's preflight found (or its error);
- ``results.json``: every row's record, finished, failed or not started (rewritten after
  each row);
- ``summary.md``: the script's table of the rows;
- ``logs.tar.gz``: ``logs/log.txt``, each row's JSON and any other log the row left
  (``launch.sh`` adds ``logs/console.txt`` at the end).
"""
import argparse
import json
import os
import os.path as osp
import tarfile
import tempfile
import time
import traceback

# mmengine 0.10.7 imports pkg_resources (gone from setuptools 82) when a config has a
# ``mmdet::``/``mmpretrain::`` base, and distutils (gone from Python 3.12) in its
# environment report: the carried setuptools 80 has both, its distutils shim installed by
# this import, which comes before any mmengine import of the run scripts
import setuptools  # noqa: F401


class RunFiles:
    """The files of a device run: ``out`` (what comes back) and the logs folder ``logs``
    (``log.txt``, packed into ``out/logs.tar.gz`` by :meth:`tar`)."""

    def __init__(self, out, logs):
        self.out, self.logs = out, logs
        os.makedirs(out, exist_ok=True)
        os.makedirs(logs, exist_ok=True)
        self._log = open(osp.join(logs, 'log.txt'), 'a')

    def log(self, *parts):
        line = ' '.join(str(p) for p in parts)
        print(line, flush=True)
        self._log.write(line + '\n')
        self._log.flush()

    def write_json(self, name, data, folder=None):
        with open(osp.join(folder or self.out, name), 'w') as f:
            json.dump(data, f, indent=2, default=str)

    def tar(self):
        with tarfile.open(osp.join(self.out, 'logs.tar.gz'), 'w:gz') as tar:
            tar.add(self.logs, arcname='logs')


class Recorder(RunFiles):
    """Writes the files in ``out`` (and the logs folder ``logs``) as rows finish.

    Subclasses set :meth:`summary` (the rows as the markdown of ``summary.md``).
    """

    def __init__(self, out, logs):
        super().__init__(out, logs)
        self.rows = []

    @staticmethod
    def summary(rows):
        raise NotImplementedError

    def add_row(self, row, logs=None):
        """Record a finished (or failed) row, with ``logs`` (``{file name: text}``) in the
        logs folder, and rewrite results, summary and the tarball."""
        for name, text in (logs or {}).items():
            with open(osp.join(self.logs, name), 'w') as f:
                f.write(text)
        self.write_json(f"{row['name']}.json", row, self.logs)
        self.rows.append(row)
        self.write_json('results.json', self.rows)
        with open(osp.join(self.out, 'summary.md'), 'w') as f:
            f.write(self.summary(self.rows) + '\n')
        self.tar()


def skip_reason(elapsed, deadline_s, limit_s=None, guess_s=None):
    """Why a row is not started at ``elapsed`` s (None: start it); ``guess_s``: how long it
    would likely take (None: no guess yet)."""
    if elapsed > deadline_s:
        return f'deadline {deadline_s:.0f} s'
    if limit_s is not None and guess_s is not None and elapsed + guess_s > limit_s:
        return f'would end at about {elapsed + guess_s:.0f} s > limit {limit_s:.0f} s'
    return None


def run_rows(rec, rows, measure, start, deadline_s, limit_s=None, guess=None,
             follow_ups=None):
    """Each row in order (a row is a tuple whose first item is its name).

    ``measure(row)`` returns the row's record (a dict with ``name``; ``(record, logs)``
    puts ``logs``, ``{file name: text}``, into the logs folder) or raises: the error is
    recorded and the next row runs, after the rows ``follow_ups(row, error)`` returns (e.g.
    the fallback settings of a row that ran out of memory). No row starts after
    ``deadline_s`` (seconds since ``start``), nor one whose ``guess(row)`` (seconds, or
    None) would end after ``limit_s`` (:func:`skip_reason`).
    """
    queue = list(rows)
    while queue:
        row = queue.pop(0)
        name = row[0]
        elapsed = time.perf_counter() - start
        reason = skip_reason(elapsed, deadline_s, limit_s, guess(row) if guess else None)
        if reason:
            rec.log(f'not starting {name} at {elapsed:.0f} s: {reason}')
            rec.add_row(dict(name=name, error=f'not started ({reason})'))
            continue
        rec.log(f'== {name} (at {elapsed:.0f} s)')
        try:
            record = measure(row)
        except Exception as err:  # record it and go on with the next row
            rec.log(traceback.format_exc())
            rec.add_row(dict(name=name, error=f'{type(err).__name__}: {err}'[:300]))
            queue[:0] = follow_ups(row, err) if follow_ups else []
            continue
        record, logs = record if isinstance(record, tuple) else (record, None)
        rec.add_row(record, logs)
        rec.log(rec.summary([record]).splitlines()[-1])


def base_parser(doc, default_out, limit_s=270.0):
    """The options every device script takes (``doc``: the script's docstring)."""
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument('--out', default=os.environ.get('OUT') or default_out,
                   help='folder of the files that come back (default $OUT)')
    p.add_argument('--logs', help='folder of the logs that go into logs.tar.gz '
                   '(default a new temporary folder)')
    p.add_argument('--smoke', action='store_true',
                   help='CPU, tiny sizes: the same path (see the script\'s smoke settings)')
    p.add_argument('--limit-s', type=float, default=limit_s,
                   help='start no row or step likely to end after this many seconds (the '
                   f'hard limit launch.sh kills the run at; default {limit_s:g})')
    return p


def parser(doc, rows, default_out, deadline_s=200.0, limit_s=270.0):
    """:func:`base_parser` and the row scripts' ``--rows`` and ``--deadline-s``."""
    p = base_parser(doc, default_out, limit_s)
    p.add_argument('--rows', type=lambda v: v.split(','),
                   help=f'comma-separated rows to run, in the order given '
                   f'(default all: {",".join(r[0] for r in rows)})')
    p.add_argument('--deadline-s', type=float, default=deadline_s,
                   help=f'start no row after this many seconds (default {deadline_s:g})')
    return p


def select_rows(rows, names):
    """The rows named in ``names``, in that order (all of ``rows`` for None)."""
    if not names:
        return list(rows)
    known = {r[0]: r for r in rows}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SystemExit(f'--rows: unknown {", ".join(unknown)}; rows are '
                         f'{", ".join(known)}')
    return [known[n] for n in names]


def main(recorder, args, preflight, body, start, logs_prefix):
    """Preflight, then ``body(rec, preflight_info)``; the files are written either way.

    Returns the exit status: 1 if the preflight failed (its error in ``preflight.json``).
    """
    logs = args.logs or tempfile.mkdtemp(prefix=logs_prefix)
    rec = recorder(args.out, logs)
    try:
        info = preflight(rec)
    except Exception as err:
        rec.log(traceback.format_exc())
        rec.write_json('preflight.json', dict(error=f'{type(err).__name__}: {err}'))
        rec.tar()
        return 1
    body(rec, info)
    rec.log(f'done in {time.perf_counter() - start:.0f} s')
    rec.tar()
    return 0
