"""Reading results files into frontiers, figures and reports."""
