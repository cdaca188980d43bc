package gate

cpus := [to_number(c.cpu) | some c in input.containers]

total := sum(cpus)

biggest := max(cpus)

average := total / count(cpus) if count(cpus) > 0

rounded := round(average * 100) / 100

over if total > 4
