"""One trial: weights -> train -> evaluate -> result.json (the code that runs inside a trial's processes)."""
