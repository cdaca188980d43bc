package gate

xs := [x | some x in input.xs]

ys := [x | some x in input.ys]
