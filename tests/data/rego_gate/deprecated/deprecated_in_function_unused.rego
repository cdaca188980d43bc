package gate

names_overlap(a, b) := count(set_diff(a, b)) < count(a)
