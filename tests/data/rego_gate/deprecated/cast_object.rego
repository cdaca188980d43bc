package gate

o := cast_object({"a": 1})
