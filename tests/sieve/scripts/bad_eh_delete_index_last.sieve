require ["editheader"];
deleteheader :last "x";
