package gate

a if a

b if any([true])
