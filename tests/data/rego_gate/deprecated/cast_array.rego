package gate

xs := cast_array({1})
