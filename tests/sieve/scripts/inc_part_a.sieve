require "fileinto";
fileinto "PartA";
