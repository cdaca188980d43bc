package gate

a if any([true])

b if upper(1) == "1"
