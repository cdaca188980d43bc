package gate

required := {"team", "owner", "env"}

present := {k | some k, _ in input.labels}

missing := required - present

common := required & present

everything := required | present

sorted_missing := sort(missing)

first_three := array.slice(sorted_missing, 0, 3)

deny contains sprintf("missing label %s", [k]) if some k in missing
