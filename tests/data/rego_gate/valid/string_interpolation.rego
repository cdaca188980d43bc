package gate

greeting := $"hello {input.user}, you have {count(input.items)} items"
