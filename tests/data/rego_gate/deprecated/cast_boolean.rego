package gate

b := cast_boolean(true)
