if duplicate { stop; }
