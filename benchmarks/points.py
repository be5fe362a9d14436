"""The --minutes option of the benchmarks that score a run at several minutes of training."""
import argparse


def minute_points(text):
    """--minutes: comma-separated minutes of training, each above 0, in order."""
    try:
        points = sorted(float(minutes) for minutes in text.split(","))
    except ValueError:
        points = []
    if not points or not all(0 < minutes < float("inf") for minutes in points):
        raise argparse.ArgumentTypeError(f"{text!r} is not minutes above 0, comma-separated, e.g. 5,15,30")
    return points
