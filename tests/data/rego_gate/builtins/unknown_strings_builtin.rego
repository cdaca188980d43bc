package gate

s := strings.reverse_words("a b")
