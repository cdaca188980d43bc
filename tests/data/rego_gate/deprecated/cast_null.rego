package gate

n := cast_null(null)
