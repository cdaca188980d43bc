package gate

xs := [x | some x in ys]

ys := [y | some y in xs]
