package gate

s := cast_string("a")
