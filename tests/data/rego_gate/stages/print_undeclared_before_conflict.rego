package gate

a if print(x)

b := 1

b contains 2
