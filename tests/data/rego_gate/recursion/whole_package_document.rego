package gate

n_rules := count(data.gate)
