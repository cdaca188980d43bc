package gate

greeting := "caf\u00e9 \t \"quoted\" \\"
