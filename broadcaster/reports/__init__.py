"""Monthly roll-ups per tier, XLSX/CSV output, the summaries posted to steering groups, engagement
queries."""
