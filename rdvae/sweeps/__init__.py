"""Sweeps: a sweep file's points, run restartably by one or many runners."""
