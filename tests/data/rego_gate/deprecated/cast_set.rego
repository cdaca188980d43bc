package gate

s := cast_set([1])
