"""What does `nbgrader autograde` cost per notebook and per chapter? (figures, not a test)

Builds a course directory with `python -m helpers.classroom course` in a private
temporary folder, hands in STUDENTS solved copies of each chapter, and autogrades each
chapter with one `nbgrader autograde` process, the way an instructor would. Each
submission is timed inside nbgrader (from its pre-convert hook to its post-convert hook:
copying, sanitizing, starting a kernel, running the notebook, saving the grades); a
chapter's time is the whole command, nbgrader's start-up included. It also counts the CPU
time of each command (nbgrader and its kernels), which does not grow when other jobs share
the machine, and subtracts what every command pays once (nbgrader's start-up, the
pre-flight import of helpers). Then it works out what a class costs: CLASS students x the
chapters, graded one process at a time.

With --sections N the students are split into N sections, each its own course directory
(its own SQLite gradebook), graded by N processes at once: the way to use several cores
safely (see INSTRUCTORS.md, "How long grading takes").

    python benchmarks/autograde.py                      # every chapter, 2 students each
    python benchmarks/autograde.py --chapters 00 03 --students 4 --sections 2
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from helpers import classroom, release  # noqa: E402

TIMING_HOOKS = '''

# --- added by benchmarks/autograde.py: time each submission ---
import time as _time
_preflight = c.Autograde.pre_convert_hook
_started = {}


def _timed_pre(assignment, student, notebooks):
    _preflight(assignment=assignment, student=student, notebooks=notebooks)
    _started[student] = _time.perf_counter()


def _timed_post(assignment, student, notebooks):
    with open(os.path.join(COURSE, "timings.jsonl"), "a") as file:
        file.write(json.dumps({"assignment": assignment, "student": student,
                               "seconds": _time.perf_counter() - _started[student]}) + "\\n")


c.Autograde.pre_convert_hook = _timed_pre
c.Autograde.post_convert_hook = _timed_post
'''


def solved_copy(course, assignment):
    """The released notebook with every answer cell written from the solved source."""
    source = next((course / "source" / assignment).glob("*.ipynb"))
    solved = release.read(source)
    answers = {c.metadata.nbgrader.grade_id: "\n".join(
        line for line in c.source.splitlines() if "SOLUTION" not in line)
        for c in solved.cells if c.metadata.get("nbgrader", {}).get("solution")}
    copy = nbformat.read(course / "release" / assignment / source.name, as_version=4)
    for cell in copy.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id in answers and cell.metadata.nbgrader.get("solution"):
            cell.source = answers[grade_id]
    return source.name, copy


def nbgrader(course, *args):
    # nbgrader runs `alembic` from this environment's bin folder.
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    done = subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=course,
                          capture_output=True, text=True, env=env)
    if done.returncode:
        sys.exit(f"nbgrader {' '.join(args)} failed in {course}:\n{done.stderr[-3000:]}")


def make_section(work, name, chapters, students):
    course = work / name
    classroom.course(course, chapters, ROOT, out=lambda *_: None)
    config = course / "nbgrader_config.py"
    config.write_text(config.read_text() + TIMING_HOOKS)
    assignments = classroom.pick(ROOT, chapters)
    for assignment in assignments:
        nbgrader(course, "generate_assignment", assignment)
        name_, copy = solved_copy(course, assignment)
        for student in students:
            folder = course / "submitted" / student / assignment
            folder.mkdir(parents=True)
            nbformat.write(copy, folder / name_)
    return course, assignments


def cpu_of_children():
    """CPU seconds used by finished child processes and theirs (nbgrader and its kernels)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def grade_section(course, assignments):
    walls, cpus = {}, {}
    for assignment in assignments:
        start, cpu = time.perf_counter(), cpu_of_children()
        nbgrader(course, "autograde", assignment, "--create")
        walls[assignment] = time.perf_counter() - start
        cpus[assignment] = cpu_of_children() - cpu  # exact with one section; summed over sections
    return walls, cpus


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chapters", nargs="*", default=[], help="e.g. 00 03 (default: all)")
    parser.add_argument("--students", type=int, default=2, help="submissions per chapter (default 2)")
    parser.add_argument("--sections", type=int, default=1, help="course directories graded at once")
    parser.add_argument("--class-size", type=int, default=150, help="students to extrapolate to")
    parser.add_argument("--work", help="folder for the course directories (default: a private temp folder)")
    args = parser.parse_args(argv)
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="autograde-bench-"))
    students = [f"student{i:03d}" for i in range(args.students)]
    sections = [students[i::args.sections] for i in range(args.sections)]
    print(f"building {args.sections} course director{'y' if args.sections == 1 else 'ies'} in {work} ...",
          flush=True)
    built = [make_section(work, f"course{i}", args.chapters, who) for i, who in enumerate(sections)]
    start = time.perf_counter()
    with ThreadPoolExecutor(len(built)) as pool:
        graded = list(pool.map(lambda b: grade_section(*b), built))
    wall = time.perf_counter() - start
    walls = [w for w, _ in graded]

    per = {}
    for course, _ in built:
        for line in (course / "timings.jsonl").read_text().splitlines():
            entry = json.loads(line)
            per.setdefault(entry["assignment"], []).append(entry["seconds"])
    assignments = built[0][1]
    print(f"\n{'chapter':<8} {'notebooks':>9} {'wall s per notebook':>20} {'(min-max)':>14} "
          f"{'command wall s':>15} {'command CPU s':>14}")
    cpu_total = 0.0
    for assignment in assignments:
        times = per.get(assignment, [])
        command = sum(w[assignment] for w in walls)
        cpu = graded[0][1][assignment] if len(built) == 1 else float("nan")
        cpu_total += cpu
        print(f"{assignment:<8} {len(times):>9} {statistics.mean(times):>20.1f} "
              f"{f'({min(times):.1f}-{max(times):.1f})':>14} {command:>15.1f} {cpu:>14.1f}")
    # What every autograde command pays once: nbgrader's start-up (an autograde with nothing
    # left to grade) and the pre-flight import of helpers (the same command the hook runs).
    course = built[0][0]
    before = cpu_of_children()
    nbgrader(course, "autograde", assignments[0])
    noop = cpu_of_children() - before
    before = cpu_of_children()
    subprocess.run([sys.executable, "-c", "import helpers, helpers.checks"], cwd=course / "source" /
                   assignments[0], check=True, env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1"))
    probe = cpu_of_children() - before
    overhead = noop + probe
    if len(built) == 1:
        print(f"\nper autograde command: {overhead:.1f} CPU s (nbgrader start-up {noop:.1f}, "
              f"pre-flight import of helpers {probe:.1f}); CPU s per notebook, without it:")
        for assignment in assignments:
            print(f"  {assignment}: {(graded[0][1][assignment] - overhead) / len(per[assignment]):.1f}")
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        print(f"largest process (a kernel, or nbgrader): {peak:.0f} MB")
    mean_per_notebook = statistics.mean(statistics.mean(per[a]) for a in assignments)
    startup = statistics.mean(sum(w[a] for w in walls) - sum(per[a]) for a in assignments) / len(built)
    chapters = len(assignments)
    notebooks = args.class_size * chapters
    sequential = notebooks * mean_per_notebook + chapters * startup
    print(f"\nmean wall time per notebook: {mean_per_notebook:.1f} s; nbgrader start-up per "
          f"command: {startup:.1f} s; all grading took {wall:.1f} s with {len(built)} process(es) at once")
    if len(built) == 1:
        cpu_per_notebook = (cpu_total - chapters * overhead) / (chapters * args.students)
        print(f"mean CPU per notebook: {cpu_per_notebook:.1f} s")
        print(f"{args.class_size} students x {chapters} chapter(s) = {notebooks} notebooks: "
              f"{notebooks * cpu_per_notebook / 3600:.1f} h of CPU; on one idle core about "
              f"{notebooks * cpu_per_notebook / 60:.0f} min, one chapter for the class "
              f"{args.class_size * cpu_per_notebook / 60:.0f} min")
    print(f"{args.class_size} students x {chapters} chapter(s) = {notebooks} notebooks at this "
          f"machine's measured wall time: {sequential / 60:.0f} min ({sequential / 3600:.1f} h) one "
          f"process at a time; one chapter for the class: {args.class_size * mean_per_notebook / 60:.0f} min")
    print(f"(CPU here: {len(os.sched_getaffinity(0))} cores; load average "
          f"{os.getloadavg()[0]:.1f} when done)")


if __name__ == "__main__":
    main()
